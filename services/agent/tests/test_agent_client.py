"""The relay client on its own: backoff, error mapping, answers it cannot use."""

from __future__ import annotations

import asyncio
import random

import pytest
from agent_fakes import FakeRelay

from relay_agent.client import (
    Assignment,
    Backoff,
    BadAssignment,
    RelayClient,
    RelayError,
    RelayUnavailable,
    StaleLease,
    UnknownAgent,
    UnknownRun,
)


def test_backoff_is_full_jitter_capped():
    random.seed(7)
    backoff = Backoff(base=0.5, cap=30)

    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # the whole range is used, not a fixed step
        assert min(delays) < ceiling * 0.2


async def test_errors_map_to_their_exceptions(relay: FakeRelay):
    run = relay.add_run("true")
    relay.queue.clear()
    run.lease_token = "lt_current"
    async with RelayClient(relay.url, relay.add_agent()) as client:
        with pytest.raises(StaleLease):
            await client.start(run.run_id, "lt_old")
        with pytest.raises(UnknownRun) as error:
            await client.start(999, "lt_x")
        assert (error.value.status, error.value.code) == (404, "unknown_run")
        relay.refuse["start"] = (400, "bad_request")
        with pytest.raises(RelayError) as error:
            await client.start(run.run_id, "lt_current")
        assert type(error.value) is RelayError
        assert (error.value.status, error.value.code) == (400, "bad_request")
        del relay.refuse["start"]
        await client.start(run.run_id, "lt_current")

    async with RelayClient(relay.url, "agt_unknown") as client:
        with pytest.raises(UnknownAgent):
            await client.heartbeat([])


async def test_claim_sends_wait_as_a_number(relay: FakeRelay):
    async with RelayClient(relay.url, relay.add_agent()) as client:
        await client.claim(1, 0.25)
        await client.claim(2, 1.0)

    assert [(c["slots"], c["wait"]) for c in relay.claims] == [(1, 0.25), (2, 1)]
    assert type(relay.claims[1]["wait"]) is int


async def test_limited_attempts_give_up_on_a_relay_that_is_not_there(relay: FakeRelay):
    url = relay.url
    await relay.stop()
    async with RelayClient(url, backoff=Backoff(0.01, 0.02)) as client:
        with pytest.raises(RelayUnavailable) as error:
            await client.login("alice", "s3cret", attempts=3)
    assert str(error.value).startswith("relay unreachable: ClientConnectorError")
    await relay.start()


def test_assignment_parsing():
    good = Assignment.from_json(
        {"run_id": 1, "lease_token": "lt", "command": "x", "timeout_seconds": 5}
    )
    assert (good.timeout_seconds, good.lease_seconds, good.env) == (5.0, 60.0, {})

    with pytest.raises(BadAssignment) as error:
        Assignment.from_json({"run_id": 1, "lease_token": "lt", "command": ""})
    assert (error.value.run_id, error.value.lease_token) == (1, "lt")
    with pytest.raises(BadAssignment) as error:
        Assignment.from_json({"command": "x"})
    assert error.value.run_id is None


async def test_waiting_retries_go_at_once_when_another_call_gets_through(
    relay: FakeRelay,
):
    token = relay.add_agent()
    await relay.stop()
    # Backoff of up to 30 s: without the wake-up these would wait that long.
    async with RelayClient(relay.url, token, backoff=Backoff(30, 30)) as client:
        waiting = [
            asyncio.create_task(client.heartbeat([])),
            asyncio.create_task(client.heartbeat([1])),
        ]
        await asyncio.sleep(0.2)
        assert relay.heartbeats == []
        await relay.start()

        await client.heartbeat([2])  # the fresh call gets through at once
        await asyncio.wait_for(asyncio.gather(*waiting), 2)

    assert sorted(beat["running"] for beat in relay.heartbeats) == [[], [1], [2]]
