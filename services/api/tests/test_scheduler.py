"""The scheduler under a manual clock: fires, skips, catch-up, retries, leases."""

from datetime import UTC, datetime

import pytest
from api_support import enroll

from relay.schedule.fires import MISFIRE_GRACE

HOURLY = {
    "name": "hourly",
    "schedule": "0 * * * *",
    "command": "true",
    "target": {"labels": ["linux"]},
}


async def _job(client, person, **changes) -> dict:
    response = await client.post(
        "/jobs", json={**HOURLY, **changes}, headers=person.headers
    )
    assert response.status == 201, await response.text()
    return await response.json()


async def _runs(client, person, job) -> list[dict]:
    response = await client.get(
        f"/jobs/{job['id']}/runs?limit=200", headers=person.headers
    )
    return list(reversed((await response.json())["items"]))


def _summary(runs) -> list[tuple]:
    return [(run["scheduled_for"][11:16], run["status"], run["reason"]) for run in runs]


async def _online(client, person, hostname="web-1", labels=("linux",)):
    agent = await enroll(client, person, hostname, labels)
    await agent.heartbeat()
    return agent


async def test_a_fire_with_no_matching_agent_online_is_recorded_as_skipped(
    client, user, clock, scheduler
):
    job = await _job(client, user)

    await clock.advance(30)
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == [
        ("10:00", "skipped", "no matching agent online")
    ]


async def test_a_paused_job_records_its_fires_as_skipped(
    client, user, clock, scheduler
):
    await _online(client, user)
    job = await _job(client, user, enabled=False)

    await clock.advance(30)
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == [
        ("10:00", "skipped", "job paused at fire time")
    ]


async def test_forbid_skips_a_fire_while_the_previous_run_is_active(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user, schedule="* * * * *")

    await clock.advance(30)
    await scheduler.tick()
    await agent.claim()
    await clock.advance(60)
    await agent.heartbeat()
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == [
        ("10:00", "claimed", None),
        (
            "10:01",
            "skipped",
            "overlap forbidden: an earlier run of the job is still active",
        ),
    ]


async def test_allow_starts_a_second_run_beside_the_first(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user, schedule="* * * * *", concurrency="allow")

    await clock.advance(30)
    await scheduler.tick()
    await clock.advance(60)
    await agent.heartbeat()
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == [
        ("10:00", "pending", None),
        ("10:01", "pending", None),
    ]


async def test_replace_cancels_the_active_run_and_tells_its_agent(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user, schedule="* * * * *", concurrency="replace")
    await clock.advance(30)
    await scheduler.tick()
    [first] = await agent.claim()
    await agent.report(first, "start")

    await clock.advance(60)
    await agent.heartbeat([first["run_id"]])
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert [(run["status"], run["cancel_requested"]) for run in runs] == [
        ("running", True),
        ("pending", False),
    ]
    assert (await agent.heartbeat([first["run_id"]]))["cancel"] == [first["run_id"]]
    assert await agent.report(first, "finish", outcome="cancelled") == {
        "status": "cancelled"
    }


async def test_a_run_on_every_agent_is_one_run_per_matching_agent(
    client, user, clock, scheduler
):
    one = await _online(client, user, "web-1", ["linux"])
    two = await _online(client, user, "web-2", ["linux", "web"])
    await _online(client, user, "mac-1", ["mac"])
    job = await _job(client, user, target={"labels": ["linux"], "all": True})

    await clock.advance(30)
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert sorted(run["agent_id"] for run in runs) == [one.id, two.id]
    assert [len(await one.claim()), len(await two.claim())] == [1, 1]


async def test_runs_for_any_matching_agent_are_spread_fairly(
    client, user, clock, scheduler
):
    one = await _online(client, user, "web-1")
    two = await _online(client, user, "web-2")
    job = await _job(client, user, schedule="* * * * *", concurrency="allow")

    for _ in range(4):
        await clock.advance(60)
        await one.heartbeat()
        await two.heartbeat()
        await scheduler.tick()
        for agent in (one, two):
            for run in await agent.claim(slots=5):
                await agent.run_to_end(run)

    runs = await _runs(client, user, job)
    assert sorted(run["agent_id"] for run in runs) == [one.id, one.id, two.id, two.id]


async def test_a_job_for_one_agent_is_skipped_while_that_agent_is_offline(
    client, user, clock, scheduler
):
    agent = await enroll(client, user, "web-1", ["linux"])
    job = await _job(client, user, target={"agent": agent.id})

    await clock.advance(30)
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == [
        ("10:00", "skipped", f"agent {agent.id} offline")
    ]


async def test_the_next_fire_is_strictly_after_a_fire_at_the_same_instant(
    client, user, clock, scheduler
):
    job = await _job(client, user)
    await clock.set(datetime(2026, 1, 5, 10, 0, tzinfo=UTC))

    await scheduler.tick()

    shown = await (await client.get(f"/jobs/{job['id']}", headers=user.headers)).json()
    assert shown["next_fire_at"] == "2026-01-05T11:00:00+00:00"


# Catch-up after the relay was down -------------------------------------------


async def _down_for_hours(clock, scheduler, hours: float):
    await clock.advance(hours * 3600)
    return await scheduler.tick()


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        (
            "skip",
            [
                ("10:00", "skipped", "missed while the relay was down"),
                ("11:00", "skipped", "missed while the relay was down"),
                ("12:00", "skipped", "missed while the relay was down"),
            ],
        ),
        (
            "once",
            [
                ("10:00", "skipped", "missed while the relay was down"),
                ("11:00", "skipped", "missed while the relay was down"),
                ("12:00", "pending", None),
            ],
        ),
        (
            {"max_runs": 2, "max_age_seconds": 7200},
            [
                ("10:00", "skipped", "missed while the relay was down"),
                ("11:00", "pending", None),
                ("12:00", "pending", None),
            ],
        ),
        (
            {"max_runs": 5, "max_age_seconds": 5400},
            [
                ("10:00", "skipped", "missed while the relay was down"),
                ("11:00", "pending", None),
                ("12:00", "pending", None),
            ],
        ),
    ],
    ids=["skip", "once", "replay-two", "replay-by-age"],
)
async def test_fires_missed_while_down_follow_the_catchup_policy(
    client, user, clock, scheduler, catchup, expected
):
    agent = await _online(client, user)
    job = await _job(client, user, catchup=catchup, concurrency="allow")

    await clock.advance(2.5 * 3600 + 30)
    await agent.heartbeat()
    await scheduler.tick()

    assert _summary(await _runs(client, user, job)) == expected


async def test_a_long_outage_records_a_bounded_number_of_skips(
    client, user, clock, scheduler
):
    job = await _job(client, user, schedule="* * * * *")

    await clock.advance(3 * 3600)
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert len(runs) == 101
    assert _summary(runs[:1]) == [
        ("11:19", "skipped", "missed while the relay was down (and 79 earlier fires)")
    ]
    assert _summary(runs[-1:]) == [("12:59", "skipped", "no matching agent online")]


async def test_a_fire_decided_within_the_grace_is_on_time_not_missed(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user)

    await clock.advance(30 + MISFIRE_GRACE.total_seconds())
    await agent.heartbeat()
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert [(run["status"], run["trigger"]) for run in runs] == [
        ("pending", "schedule")
    ]


# Retries, leases and lost agents ---------------------------------------------


async def test_a_failed_run_is_retried_after_its_backoff_as_a_linked_attempt(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user, retries=2, retry_backoff_seconds=30)
    await clock.advance(30)
    await scheduler.tick()
    [first] = await agent.claim()

    await agent.run_to_end(first, exit_code=3)
    assert await agent.claim() == []
    await clock.advance(30)
    await agent.heartbeat()
    await scheduler.tick()
    [second] = await agent.claim()
    await agent.run_to_end(second, exit_code=3)
    await clock.advance(60)
    await agent.heartbeat()
    await scheduler.tick()
    [third] = await agent.claim()
    await agent.run_to_end(third, exit_code=3)
    await clock.advance(600)
    await agent.heartbeat()
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert [
        (r["attempt"], r["status"], r["trigger"], r["exit_code"]) for r in runs
    ] == [
        (1, "failed", "schedule", 3),
        (2, "failed", "retry", 3),
        (3, "failed", "retry", 3),
    ]
    assert [run["first_run_id"] for run in runs] == [
        None,
        first["run_id"],
        first["run_id"],
    ]
    assert await agent.claim() == []


async def test_a_run_whose_lease_lapses_is_lost_and_its_late_report_refused(
    client, user, clock, scheduler, settings
):
    agent = await _online(client, user)
    job = await _job(client, user, retries=1, retry_backoff_seconds=0)
    await clock.advance(30)
    await scheduler.tick()
    [run] = await agent.claim()
    await agent.report(run, "start")

    await clock.advance(settings.lease_seconds + 1)
    await agent.heartbeat()
    await scheduler.tick()
    refused = await agent.report(
        run, "finish", status=409, outcome="exited", exit_code=0
    )

    assert refused["error"] == "stale_lease"
    runs = await _runs(client, user, job)
    assert [(r["attempt"], r["status"], r["reason"]) for r in runs] == [
        (1, "lost", "lease expired"),
        (2, "pending", None),
    ]


async def test_runs_held_by_an_agent_that_goes_silent_are_lost(
    client, user, clock, scheduler, settings
):
    agent = await _online(client, user)
    job = await _job(client, user, retries=1, retry_backoff_seconds=0)
    await clock.advance(30)
    await scheduler.tick()
    [run] = await agent.claim()
    await agent.report(run, "start")
    await agent.report(run, "lease")

    await clock.advance(settings.heartbeat_seconds * 3 + 1)
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert [(r["attempt"], r["status"], r["reason"]) for r in runs] == [
        (1, "lost", "agent offline"),
        (2, "skipped", "no matching agent online"),
    ]


async def test_a_waiting_run_moves_to_another_agent_when_its_own_goes_silent(
    client, user, clock, scheduler, settings
):
    gone = await _online(client, user, "web-1")
    job = await _job(client, user)
    await clock.advance(30)
    await scheduler.tick()
    [run] = await _runs(client, user, job)
    assert run["agent_id"] == gone.id

    await clock.advance(settings.heartbeat_seconds * 3 + 1)
    other = await _online(client, user, "web-2")
    await scheduler.tick()

    [claimed] = await other.claim()
    assert claimed["run_id"] == run["id"]


async def test_a_fire_by_hand_at_the_instant_of_a_scheduled_fire_is_a_run_of_its_own(
    client, user, clock, scheduler
):
    agent = await _online(client, user)
    job = await _job(client, user, concurrency="allow")
    await clock.set(datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    await agent.heartbeat()

    await client.post(f"/jobs/{job['id']}/run", headers=user.headers)
    await scheduler.tick()

    runs = await _runs(client, user, job)
    assert [(run["scheduled_for"][11:16], run["trigger"]) for run in runs] == [
        ("10:00", "manual"),
        ("10:00", "schedule"),
    ]


async def test_a_new_leader_gives_agents_a_lease_before_taking_runs_back(
    client, user, clock, scheduler, settings
):
    agent = await _online(client, user)
    await _job(client, user)
    await clock.advance(30)
    await scheduler.tick()
    [run] = await agent.claim()
    scheduler._leading_since = clock.now()

    await clock.advance(settings.lease_seconds - 1)
    await scheduler.tick()
    renewed = await agent.report(run, "start")

    assert renewed["status"] == "running"
