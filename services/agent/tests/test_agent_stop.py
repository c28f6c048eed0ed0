"""Stopping commands: timeout, cancel, stale lease, and the agent's own SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from agent_fakes import FakeRelay, agent_command, clean_env, config_file_data

from relay_agent.client import Assignment

# The shell and its child both ignore SIGTERM: only SIGKILL of the group ends them.
STUBBORN = 'echo $$; trap "" TERM; sleep 300 & wait'


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def pgid_of(relay: FakeRelay, run) -> int:
    await relay.wait_until(lambda: run.text().endswith("\n"), what="the pid line")
    pgid = int(run.text().split()[0])
    assert group_alive(pgid)
    return pgid


async def test_timeout_kills_a_tree_that_ignores_sigterm(relay: FakeRelay, start_agent):
    run = relay.add_run(STUBBORN, timeout_seconds=0.5)
    await start_agent()

    pgid = await pgid_of(relay, run)
    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish == {
        "outcome": "timed_out",
        "exit_code": None,
        "signal": None,
        "error": None,
    }
    assert run.status == "timed_out"
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    # The timeout (0.5 s) plus the SIGTERM grace (0.5 s), then SIGKILL.
    assert run.finished_at - run.started_at >= 1.0


async def test_a_tree_that_obeys_sigterm_does_not_wait_for_the_grace(
    relay: FakeRelay, make_config, start_agent
):
    run = relay.add_run("echo $$; sleep 300", timeout_seconds=1.0)
    await start_agent(make_config(kill_grace=5))

    pgid = await pgid_of(relay, run)
    await relay.wait_until(lambda: run.status, seconds=3, what="finish")

    assert run.finish["outcome"] == "timed_out"
    assert not group_alive(pgid)
    # Without the 5 s grace: 1 s timeout, then the group ends at once on SIGTERM.
    assert run.finished_at - run.started_at < 2.5


async def test_cancel_in_a_heartbeat_answer_stops_the_run(
    relay: FakeRelay, start_agent
):
    run = relay.add_run(STUBBORN)
    await start_agent()

    pgid = await pgid_of(relay, run)
    relay.cancel.add(run.run_id)
    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish == {
        "outcome": "cancelled",
        "exit_code": None,
        "signal": None,
        "error": None,
    }
    assert not group_alive(pgid)


async def test_cancel_in_a_lease_answer_stops_the_run(relay: FakeRelay, start_agent):
    relay.heartbeat_seconds = 60  # so that only the lease answer can tell
    run = relay.add_run("echo $$; sleep 300")
    await start_agent()

    pgid = await pgid_of(relay, run)
    heartbeats = len(relay.heartbeats)
    relay.cancel.add(run.run_id)
    await relay.wait_until(lambda: run.status, what="finish")

    assert run.finish["outcome"] == "cancelled"
    assert len(relay.heartbeats) == heartbeats
    assert not group_alive(pgid)


async def test_stale_lease_stops_the_command_and_drops_its_result(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    run = relay.add_run(STUBBORN)
    await start_agent()

    pgid = await pgid_of(relay, run)
    run.stale = True
    await relay.wait_until(lambda: not group_alive(pgid), seconds=5, what="group gone")
    await asyncio.sleep(0.5)

    assert run.stale_answers == ["lease"]
    assert run.finish_attempts == 0
    assert run.finishes == []
    assert list((tmp_path / "state" / "spool").glob("run-*")) == []


async def start_process(config, tmp_path, name="agent"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config_file_data(config)))
    log = (tmp_path / f"{name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *agent_command(),
        "run",
        "--config",
        str(path),
        env=clean_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    return proc


async def test_sigterm_lets_the_running_command_finish_then_exits_0(
    relay: FakeRelay, make_config, tmp_path
):
    run = relay.add_run("echo started; sleep 1; echo done")
    proc = await start_process(make_config(shutdown_grace=5), tmp_path)

    await relay.wait_until(lambda: run.outputs, what="first output")
    proc.send_signal(signal.SIGTERM)
    log_file = tmp_path / "agent.log"
    await relay.wait_until(lambda: "stop requested" in log_file.read_text(), what="log")
    later = relay.add_run("echo must not run")
    code = await asyncio.wait_for(proc.wait(), 10)

    assert code == 0
    assert run.text() == "started\ndone\n"
    assert run.finish["outcome"] == "exited"
    assert run.finish["exit_code"] == 0
    assert later.starts == 0
    log = log_file.read_text()
    assert run.lease_token not in log
    assert "agt_" not in log


async def test_sigterm_stops_a_command_that_outlives_the_grace(
    relay: FakeRelay, make_config, tmp_path
):
    run = relay.add_run(STUBBORN)
    proc = await start_process(
        make_config(shutdown_grace=0.5, kill_grace=0.5), tmp_path
    )

    pgid = await pgid_of(relay, run)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 10)

    assert code == 0
    assert run.finish == {
        "outcome": "interrupted",
        "exit_code": None,
        "signal": None,
        "error": "the agent is shutting down",
    }
    assert run.status == "lost"  # the relay's retries apply to it
    assert not group_alive(pgid)
    # shutdown grace 0.5 s, then SIGTERM grace 0.5 s, then SIGKILL.
    assert 1.0 <= time.monotonic() - started < 5


async def test_a_second_stop_request_skips_the_graces(
    relay: FakeRelay, make_config, start_agent
):
    run = relay.add_run(STUBBORN)
    running = await start_agent(make_config(shutdown_grace=30, kill_grace=30))
    pgid = await pgid_of(relay, run)

    started = time.monotonic()
    running.agent.request_stop()
    await asyncio.sleep(0.2)
    assert group_alive(pgid)  # still within the 30 s shutdown grace
    running.agent.request_stop()
    code = await asyncio.wait_for(running.task, 5)

    assert code == 0
    assert time.monotonic() - started < 3
    assert not group_alive(pgid)
    assert run.finish["outcome"] == "interrupted"
    assert run.finish["error"] == "the agent is shutting down"


async def test_stale_lease_on_an_output_report_drops_the_run_too(
    relay: FakeRelay, start_agent, caplog
):
    relay.lease_seconds = 30  # renewals every 10 s: the output report sees it first
    run = relay.add_run("echo $$; while true; do echo tick; sleep 0.05; done")
    await start_agent()

    pgid = await pgid_of(relay, run)
    run.stale = True
    await relay.wait_until(lambda: not group_alive(pgid), seconds=5, what="group gone")
    await asyncio.sleep(0.3)

    assert run.stale_answers[0] == "output"
    assert run.finishes == [] and run.finish_attempts == 0
    assert [r.levelname for r in caplog.records if r.levelname == "ERROR"] == []


async def test_a_run_whose_start_is_answered_after_sigterm_is_given_back(
    relay: FakeRelay, start_agent, tmp_path
):
    run = relay.add_run("echo must not run > ran.txt")
    asked = asyncio.Event()

    async def stop_meanwhile(_run) -> None:
        running.agent.request_stop()
        asked.set()

    relay.on_report["start"] = stop_meanwhile
    running = await start_agent()
    await asyncio.wait_for(asked.wait(), 10)
    code = await asyncio.wait_for(running.task, 10)

    assert code == 0
    assert run.starts == 1
    assert run.finish == {
        "outcome": "interrupted",
        "exit_code": None,
        "signal": None,
        "error": "the agent is shutting down",
    }
    assert run.status == "lost"
    assert run.outputs == {}
    assert not (tmp_path / "work" / "ran.txt").exists()


async def test_a_run_claimed_during_shutdown_is_finished_without_a_start(
    relay: FakeRelay, make_config, start_agent, tmp_path
):
    # The claim answer and the stop request cross: the run is handed back at once
    # (finish straight after the claim), not left for its lease to lapse.
    running = await start_agent(make_config(claim_wait=0.2))
    await relay.wait_until(lambda: relay.claims, what="a first claim")
    run = relay.add_run("echo must not run > ran.txt")
    relay.queue.clear()
    run.lease_token, run.agent_id = "lt_late", relay.claims[0]["agent"]
    assignment = Assignment.from_json(relay._assignment(run))

    running.agent.request_stop()
    running.agent._launch(assignment)
    code = await running.stop()

    assert code == 0
    assert run.starts == 0
    assert run.finish == {
        "outcome": "interrupted",
        "exit_code": None,
        "signal": None,
        "error": "the agent is shutting down",
    }
    assert not (tmp_path / "work" / "ran.txt").exists()
    assert list((tmp_path / "state" / "spool").glob("run-*")) == []


async def test_sigterm_gives_back_a_run_whose_start_was_in_flight(
    relay: FakeRelay, make_config, tmp_path
):
    # Two runs in one claim answer; the relay holds the second one's start report
    # until the agent has been told to stop.
    first = relay.add_run("echo $$; sleep 300")
    second = relay.add_run("echo must not run > ran2.txt")
    asked, stopped = asyncio.Event(), asyncio.Event()

    async def hold_second(run) -> None:
        if run is second:
            asked.set()
            await stopped.wait()

    relay.on_report["start"] = hold_second
    proc = await start_process(
        make_config(concurrency=2, shutdown_grace=0.3, kill_grace=0.3), tmp_path
    )
    pgid = await pgid_of(relay, first)
    await asyncio.wait_for(asked.wait(), 10)
    proc.send_signal(signal.SIGTERM)
    log_file = tmp_path / "agent.log"
    await relay.wait_until(lambda: "stop requested" in log_file.read_text(), what="log")
    stopped.set()
    code = await asyncio.wait_for(proc.wait(), 10)

    assert code == 0
    assert not group_alive(pgid)
    for run in (first, second):
        assert run.finish["outcome"] == "interrupted"
        assert run.status == "lost"
    assert second.outputs == {}
    assert not (tmp_path / "work" / "ran2.txt").exists()
